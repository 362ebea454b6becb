//! Checkpoint manifests and full snapshots (the backend-neutral checkpoint format): any
//! manifest and data bytes restore to records or to an error, never a panic. The input is
//! split at its first 0xFF byte into the MANIFEST and one data part.
#![no_main]

use std::collections::HashMap;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use statekit_backend::checkpoint::{read_full_snapshot, FULL_FORMAT};
use statekit_backend::{CheckpointHandle, CheckpointStorage, Error, ErrorKind, KeyGroupRange};

/// Checkpoint storage in memory.
#[derive(Debug, Default)]
struct Objects(Mutex<HashMap<String, Vec<u8>>>);

impl CheckpointStorage for Objects {
    fn describe(&self) -> String {
        "memory://fuzz".into()
    }
    fn put(&self, path: &str, data: &[u8]) -> statekit_backend::Result<()> {
        self.0.lock().unwrap().insert(path.into(), data.to_vec());
        Ok(())
    }
    fn get(&self, path: &str) -> statekit_backend::Result<Vec<u8>> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, path.to_string()))
    }
    fn list(&self, prefix: &str) -> statekit_backend::Result<Vec<String>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn exists(&self, path: &str) -> statekit_backend::Result<bool> {
        Ok(self.0.lock().unwrap().contains_key(path))
    }
    fn delete(&self, path: &str) -> statekit_backend::Result<()> {
        self.0.lock().unwrap().remove(path);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xFF).unwrap_or(data.len());
    let (manifest, part) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let storage = Objects::default();
    let all = KeyGroupRange::new(0, 127).unwrap();
    let handle = CheckpointHandle {
        checkpoint_id: 1,
        backend: "memory".into(),
        format: FULL_FORMAT.into(),
        location: "chk".into(),
        key_groups: all,
    };
    storage.put("chk/MANIFEST", manifest).unwrap();
    storage.put("chk/data-00000", part).unwrap();
    if let Ok(snapshot) = read_full_snapshot(&storage, &handle) {
        let _ = snapshot.read(&storage, all, &mut |_| Ok(()));
    }
});
