//! Every `fixtures/good/*.yaml` loads; every `fixtures/bad/<name>.yaml` fails with exactly the
//! line in `fixtures/bad/<name>.err`. Paths are relative to the crate (cargo runs tests there), so
//! the expected messages carry stable file names.
//!
//! `OCHOPOD_BLESS=1 cargo test -p ochopod-config --test fixtures` rewrites the `.err` files from
//! the current output (review the diff before keeping it).

use std::path::{Path, PathBuf};

use ochopod_config::{load, Env};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| Path::new(dir).join(e.unwrap().file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_good_fixture_loads() {
    let files = yaml_files("fixtures/good");
    assert!(files.len() >= 3, "expected the good fixtures, found {files:?}");
    for f in files {
        if let Err(e) = load(&f, &Env::new()) {
            panic!("{} should load, got: {e}", f.display());
        }
    }
}

#[test]
fn every_bad_fixture_fails_with_its_exact_error() {
    let bless = std::env::var_os("OCHOPOD_BLESS").is_some();
    let files = yaml_files("fixtures/bad");
    assert!(files.len() >= 12, "expected at least 12 bad fixtures, found {}", files.len());
    let mut failures = Vec::new();
    for f in files {
        let expected_file = f.with_extension("err");
        let got = match load(&f, &Env::new()) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but should have failed", f.display()));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if bless {
            std::fs::write(&expected_file, format!("{got}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|e| panic!("{}: {e} (write the expected error there)", expected_file.display()));
        if got != expected.trim_end_matches('\n') {
            failures.push(format!("{}:\n  expected: {}\n  got:      {got}", f.display(), expected.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
