//! The `overlapped` command-line tool.

fn main() {}
