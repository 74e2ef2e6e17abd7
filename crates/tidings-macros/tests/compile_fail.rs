//! Misuse of `#[derive(DomainEvent)]` fails to compile with a message that says what to do.

#[test]
fn misuse_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
