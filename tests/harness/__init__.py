"""Test harness: runs the real Pulumi program (`__main__.py`) through the Python runtime with mocks.

- `program.run_program` evaluates the program for a stack config and returns what the mocks recorded.
- `recording.RecordingMocks` (unit tests) records resources and returns plausible provider outputs.
- `executing.ExecutingMocks` (integration tests) really executes `command:*` resources and emulates
  `tls:*`, keeping state between runs like a Pulumi stack. See DEVELOPERS.md.
"""
