"""cluster-cookbook's CrossGuard policy pack: assembles the rules of `rules.py` (all mandatory).

Run with `pulumi preview --policy-pack policy` (add `--policy-pack-config FILE` for an allow-list).
Constructing the pack starts the analyzer and blocks: never import this module from tests.
"""

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from rules import (  # the pack runs with policy/ as its working directory
    CONFIG_SCHEMA,
    RESOURCE_RULES,
    STACK_RULE_DESCRIPTION,
    STACK_RULE_NAME,
    validate_resource,
    validate_stack,
)

PolicyPack(
    name="cluster-cookbook",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *[ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=validate_resource(rule),
            config_schema=PolicyConfigSchema(properties=CONFIG_SCHEMA) if rule.name.endswith("host-access")
            else None,
        ) for rule in RESOURCE_RULES],
        StackValidationPolicy(name=STACK_RULE_NAME, description=STACK_RULE_DESCRIPTION, validate=validate_stack),
    ],
)
