//! The README's one example that needs database features is not a doctest
//! (the README is the crate docs, tested without features too): it is
//! `examples/sql_stores.rs`, compiled with `--all-features`, and must stay
//! the same text.
#![allow(clippy::unwrap_used, reason = "test")]

#[test]
fn the_readme_sql_block_is_the_sql_stores_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/sql_stores.rs");
    assert!(
        readme.contains(&format!("```rust,ignore\n{example}```\n")),
        "README.md's `rust,ignore` block must be examples/sql_stores.rs verbatim"
    );
    // No other block is left out of the doctests.
    assert_eq!(readme.matches("```rust,ignore").count(), 1);
}
