//! The README's examples that need database features are not doctests (the
//! README is the crate docs, tested without features too): they are
//! `examples/sql_stores.rs` and `examples/many_servers.rs`, compiled with
//! `--all-features`, and must stay the same text.
#![allow(clippy::unwrap_used, reason = "test")]

#[test]
fn the_readme_database_blocks_are_the_examples() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/sql_stores.rs");
    assert!(
        readme.contains(&format!("```rust,ignore\n{example}```\n")),
        "README.md's `rust,ignore` block must be examples/sql_stores.rs verbatim"
    );
    let example = include_str!("../examples/many_servers.rs");
    assert!(
        readme.contains(&format!("```rust,ignore\n{example}```\n")),
        "README.md's cache block must be examples/many_servers.rs verbatim"
    );
    // No other block is left out of the doctests.
    assert_eq!(readme.matches("```rust,ignore").count(), 2);
}
