// Placeholder so the workspace manifest parses; the rules engineer replaces this with the real benchmark.
fn main() {}
