//! Compliance rule engine; built out in a later issue.
