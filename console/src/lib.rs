//! Analyst console (HTTP API and web UI); built out in a later issue.
