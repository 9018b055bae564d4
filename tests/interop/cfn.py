"""CloudFormation templates as data, for tests/interop/test_deploy.py: the YAML with its
short tags (!Ref, !Sub, ...) read as their long forms, the template's Conditions for given
parameters, and the intrinsic functions the templates use evaluated with given parameters
(a resource's Ref or GetAtt stands for itself: "{Name}", "{Name.Attribute}").
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


class _NoValue:
    """AWS::NoValue: the property or list item is left out."""


NO_VALUE = _NoValue()


def conditions(template, params):
    """{condition name: bool} of the template's Conditions for the given parameters."""
    defs = dict(template.get("Conditions", {}))
    out = {}

    def value(node):
        if isinstance(node, dict) and "Condition" in node:
            return truth(node["Condition"])
        return evaluate(node, params)

    def truth(name):
        if name not in out:
            node = defs[name]
            ((fn, args),) = node.items()
            if fn == "Fn::Equals":
                out[name] = value(args[0]) == value(args[1])
            elif fn == "Fn::Not":
                out[name] = not condition(args[0])
            elif fn == "Fn::And":
                out[name] = all(condition(a) for a in args)
            elif fn == "Fn::Or":
                out[name] = any(condition(a) for a in args)
            else:
                raise AssertionError(f"condition function not handled here: {fn}")
        return out[name]

    def condition(node):
        if isinstance(node, dict) and set(node) == {"Condition"}:
            return truth(node["Condition"])
        defs[f"_{id(node)}"] = node
        return truth(f"_{id(node)}")

    for name in list(defs):
        truth(name)
    return {k: v for k, v in out.items() if not k.startswith("_")}


def evaluate(value, params, conds=None):
    """The intrinsic functions the templates use: Ref, Fn::Join, Fn::Sub, Fn::If,
    Fn::GetAtt, Fn::Base64 (left as its text). Anything else, recursively."""
    conds = conds or {}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list):
        items = [evaluate(v, params, conds) for v in value]
        return [v for v in items if v is not NO_VALUE]
    if len(value) == 1:
        ((fn, args),) = value.items()
        if fn == "Ref":
            if args == "AWS::NoValue":
                return NO_VALUE
            return params[args] if args in params else "{" + args + "}"
        if fn == "Fn::GetAtt":
            return "{" + (args if isinstance(args, str) else ".".join(args)) + "}"
        if fn == "Fn::Base64":
            return evaluate(args, params, conds)
        if fn == "Fn::If":
            name, yes, no = args
            return evaluate(yes if conds[name] else no, params, conds)
        if fn == "Fn::Join":
            sep, items = args
            items = evaluate(items, params, conds)
            return sep.join(str(i) for i in items)
        if fn == "Fn::Sub":
            text, names = args if isinstance(args, list) else (args, {})
            scope = {**params, **{k: evaluate(v, params, conds) for k, v in names.items()}}

            def sub(m):
                name = m.group(1)
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                return str(scope[name]) if name in scope else "{" + name + "}"

            return re.sub(r"\$\{(!?[\w:.]+)\}", sub, text)
        if fn.startswith("Fn::"):
            raise AssertionError(f"intrinsic function not handled here: {value}")
    out = {k: evaluate(v, params, conds) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not NO_VALUE}


def broken_rules(template, params):
    """The AssertDescriptions of the template's Rules that these parameters break (the
    checks CloudFormation makes before it creates anything)."""

    def value(node):
        if isinstance(node, dict) and len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Ref":
                return params[args]
            if fn == "Fn::Equals":
                return value(args[0]) == value(args[1])
            if fn == "Fn::Not":
                return not value(args[0])
            if fn == "Fn::And":
                return all(value(a) for a in args)
            if fn == "Fn::Or":
                return any(value(a) for a in args)
            if fn == "Fn::Contains":
                return value(args[1]) in value(args[0])
            raise AssertionError(f"rule function not handled here: {fn}")
        return node

    broken = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not value(rule["RuleCondition"]):
            continue
        broken += [a["AssertDescription"] for a in rule["Assertions"] if not value(a["Assert"])]
    return broken


def resources(template, params):
    """{logical id: resource with every intrinsic function evaluated} of the resources
    the template creates with the given parameters (their Condition true)."""
    conds = conditions(template, params)
    return {
        name: evaluate(resource, params, conds)
        for name, resource in template["Resources"].items()
        if conds.get(resource.get("Condition"), True)
    }


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
