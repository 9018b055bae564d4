"""CloudFormation templates as data, for tests/interop/test_deploy.py: the YAML with its
short tags (!Ref, !Sub, ...) read as their long forms, and the few intrinsic functions
that build muster's config evaluated with given parameters.
"""

import re

import yaml


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) as their long forms."""


def _cfn_tag(loader, suffix, node):
    key = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {key: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path):
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (a SafeLoader)


def evaluate(value, params):
    """The few intrinsic functions the config strings use: Ref, Fn::Join, Fn::Sub."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return params[value["Ref"]]
    if "Fn::Join" in value:
        sep, items = value["Fn::Join"]
        items = evaluate(items, params)
        return sep.join(items if isinstance(items, list) else [evaluate(i, params) for i in items])
    if "Fn::Sub" in value:
        text, names = value["Fn::Sub"] if isinstance(value["Fn::Sub"], list) else (value["Fn::Sub"], {})
        scope = {**params, **{k: evaluate(v, params) for k, v in names.items()}}
        return re.sub(r"\$\{([\w:]+)\}", lambda m: str(scope[m.group(1)]), text)
    raise AssertionError(f"intrinsic function not handled here: {value}")


def generated_configs(template):
    """{task definition logical id: its MUSTER_CONFIG_TOML value (unevaluated)}."""
    out = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for env in container.get("Environment", []):
                if env["Name"] == "MUSTER_CONFIG_TOML":
                    out[name] = env["Value"]
    return out
