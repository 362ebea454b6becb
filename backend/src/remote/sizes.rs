//! What a database and its checkpoints hold in the object store, measured by listing the
//! store: the same figures for a `file://` directory and an S3 bucket, where no local
//! directory holds the state.
//!
//! A SlateDB database keeps its tables under `<db>/compacted/<ulid>.sst` and its manifests
//! under `<db>/manifest/`. A checkpoint pins one manifest; the tables that manifest lists
//! (its L0 tables and sorted runs, some of them in the databases a restore cloned from) are
//! what the checkpoint holds.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use slatedb::VersionedManifest;

use super::config::store_error;
use crate::error::Result;

/// Total bytes of the objects under `prefix`.
///
/// # Errors
/// When the store cannot be listed.
pub(crate) async fn bytes_under(store: &dyn ObjectStore, prefix: &Path) -> Result<u64> {
    let objects: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| store_error(format!("listing {prefix}"), e))?;
    Ok(objects.iter().map(|o| o.size).sum())
}

/// The size of every table of the database at `db`, by table id.
///
/// # Errors
/// When the store cannot be listed.
pub(crate) async fn table_sizes(
    store: &dyn ObjectStore,
    db: &Path,
) -> Result<HashMap<String, u64>> {
    let dir = db.clone().join("compacted");
    let objects: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| store_error(format!("listing {dir}"), e))?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let name = o.location.filename()?;
            let id = name.strip_suffix(".sst")?;
            Some((id.to_string(), o.size))
        })
        .collect())
}

/// The ids of the tables `manifest` lists, and the databases other than its own that hold
/// some of them (after a restore, the checkpoints it cloned from).
pub(crate) fn tables_of(manifest: &VersionedManifest) -> (HashSet<String>, Vec<String>) {
    let mut tables: HashSet<String> = manifest
        .l0()
        .iter()
        .map(|view| view.sst.id.value().to_string())
        .collect();
    for run in manifest.compacted() {
        tables.extend(run.sst_views().iter().map(|v| v.sst.id.value().to_string()));
    }
    let external = manifest
        .external_dbs()
        .iter()
        .map(|db| db.path.clone())
        .collect();
    (tables, external)
}

/// Bytes of the tables in `tables` according to `sizes`; a table no listing found (deleted
/// meanwhile) counts as 0.
pub(crate) fn bytes_of(tables: &HashSet<String>, sizes: &HashMap<String, u64>) -> u64 {
    tables.iter().filter_map(|t| sizes.get(t)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    #[test]
    fn listing_sums_objects_and_finds_tables() {
        let store = InMemory::new();
        let db = Path::from("instances/a");
        let put = |path: &str, len: usize| {
            futures::executor::block_on(
                store.put(&Path::from(path), PutPayload::from(vec![0u8; len])),
            )
            .unwrap();
        };
        put("instances/a/compacted/01AAA.sst", 100);
        put("instances/a/compacted/01BBB.sst", 50);
        put("instances/a/manifest/00000000000000000001.manifest", 7);
        put("instances/b/compacted/01CCC.sst", 1000);
        let total = futures::executor::block_on(bytes_under(&store, &db)).unwrap();
        assert_eq!(total, 157);
        let sizes = futures::executor::block_on(table_sizes(&store, &db)).unwrap();
        assert_eq!(sizes.len(), 2);
        let wanted: HashSet<String> = ["01AAA".to_string(), "01ZZZ".to_string()].into();
        assert_eq!(bytes_of(&wanted, &sizes), 100);
    }
}
