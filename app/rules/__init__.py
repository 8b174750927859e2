"""The condition language: a typed JSON AST (schema), the attribute catalog (attributes) and the one compiler
that turns a condition into SQL over the customer_features view (compile)."""

from app.rules.attributes import (BUILTIN_ATTRIBUTES, Attribute, AttributeCatalog, AttributeRead, AttributeSource,
                                  AttributeType, customer_features, is_builtin_attribute, list_attributes,
                                  features_between, features_for_customers, load_catalog,
                                  register_builtin_attribute)
from app.rules.compile import (ExplainedLeaf, check_condition, compile_condition, compile_explanation, explain_row,
                               what_if_features)
from app.rules.schema import (CONDITION_EXAMPLES, MAX_DEPTH, MAX_NODES, Comparison, Condition, Operator,
                              dump_condition, parse_condition, referenced_attributes)

__all__ = [
    "BUILTIN_ATTRIBUTES", "CONDITION_EXAMPLES", "MAX_DEPTH", "MAX_NODES", "Attribute", "AttributeCatalog",
    "AttributeRead", "AttributeSource", "AttributeType", "Comparison", "Condition", "ExplainedLeaf", "Operator",
    "check_condition", "compile_condition", "compile_explanation", "customer_features", "dump_condition",
    "explain_row", "features_between", "features_for_customers", "is_builtin_attribute", "list_attributes", "load_catalog", "parse_condition", "referenced_attributes",
    "register_builtin_attribute", "what_if_features",
]
