//! The catalog survives a crash at any point of its update: a leftover temp file (crash before
//! the rename) is ignored and the previous catalog loads; a damaged catalog is an error, never
//! an empty broker.
use keel_engine::{catalog::Catalog, EngineError};

#[test]
fn crash_before_rename_keeps_the_old_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = Catalog::load(dir.path()).expect("load");
    cat.update(|c| {
        c.next_uid = 7;
        Ok(())
    })
    .expect("update");
    drop(cat);
    // A crash between writing the temp file and renaming it.
    std::fs::write(dir.path().join("catalog/catalog.tmp"), b"{\"half").expect("write");
    let cat = Catalog::load(dir.path()).expect("load");
    assert_eq!(cat.snapshot().next_uid, 7);
    assert!(!dir.path().join("catalog/catalog.tmp").exists());
}

#[test]
fn damaged_catalog_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("catalog")).expect("mkdir");
    std::fs::write(
        dir.path().join("catalog/catalog.json"),
        b"{\"version\": 1, \"top",
    )
    .expect("write");
    assert!(matches!(
        Catalog::load(dir.path()),
        Err(EngineError::Corrupt { .. })
    ));
}

#[test]
fn failed_update_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = Catalog::load(dir.path()).expect("load");
    let r: keel_engine::Result<()> = cat.update(|c| {
        c.next_uid = 99;
        Err(EngineError::LimitReached("test".into()))
    });
    assert!(r.is_err());
    assert_eq!(cat.snapshot().next_uid, 0);
}
