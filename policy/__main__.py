"""cluster-cookbook's CrossGuard policy pack: assembles the rules of `rules.py` (mandatory unless a rule says
advisory).

`make preview` / `make up` run it (`python -m tools.deploy` passes it to the engine); by hand:
`pulumi preview --policy-pack policy` (add `--policy-pack-config FILE` for allow-lists, see
`example-config.json`). Constructing the pack starts the analyzer and blocks: never import this module from
tests.
"""

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from rules import (  # the pack runs with policy/ as its working directory
    RESOURCE_RULES,
    STACK_RULE_DESCRIPTION,
    STACK_RULE_NAME,
    rule_schema,
    validate_resource,
    validate_stack,
)

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def _schema(properties: dict | None) -> PolicyConfigSchema | None:
    return None if properties is None else PolicyConfigSchema(properties=properties)


PolicyPack(
    name="cluster-cookbook",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *[ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=validate_resource(rule),
            enforcement_level=LEVELS[rule.enforcement],
            config_schema=_schema(rule_schema(rule)),
        ) for rule in RESOURCE_RULES],
        StackValidationPolicy(name=STACK_RULE_NAME, description=STACK_RULE_DESCRIPTION, validate=validate_stack),
    ],
)
