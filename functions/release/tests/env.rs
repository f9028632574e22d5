//! The `gigalixir-release` binary refuses to start without its settings, naming each
//! missing variable with an example.

use std::process::Command;

#[test]
fn missing_settings_are_named_with_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigalixir-release"))
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GIGALIXIR_STORE is not set")
            && err.contains("e.g. GIGALIXIR_STORE=sqlite://"),
        "{err}"
    );
    assert!(err.contains("GIGALIXIR_BUS is not set"), "{err}");
}

#[test]
fn help_lists_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigalixir-release"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| `GIGALIXIR_BUS` | yes |"), "{text}");
}
