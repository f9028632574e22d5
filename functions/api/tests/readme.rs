//! The README's environment table is the one `shared::deployment::env` makes.

#[test]
fn the_readme_lists_the_environment_of_deployment_rs() {
    let readme = include_str!("../README.md");
    let table = shared::service::env_table(shared::deployment::Function::Api);
    assert!(
        readme.contains(&table),
        "README.md's environment table is out of date; it should read:\n{table}"
    );
}

#[test]
fn the_readme_has_the_access_table_of_the_app_routes() {
    let readme = include_str!("../../../README.md");
    let table = gigalixir_api::access::readme_table();
    assert!(
        readme.contains(&table),
        "README.md's access table is out of date; it should read:\n{table}"
    );
}
