//! proxy-wasm shared data (`proxy_get_shared_data` / `proxy_set_shared_data`):
//! process-wide, per `vm_id`, as Envoy's, with a compare-and-swap token per key.
//!
//! It is one map behind a mutex: a filter that calls these takes the lock on its
//! request path (only then; no other request touches it). Envoy's is also one
//! process-wide map under a lock.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// `WasmResult::Ok`.
const OK: i32 = 0;
/// `WasmResult::CasMismatch`.
const CAS_MISMATCH: i32 = 8;

type Map = HashMap<(String, String), (Vec<u8>, u32)>;

fn map() -> &'static Mutex<Map> {
    static MAP: OnceLock<Mutex<Map>> = OnceLock::new();
    MAP.get_or_init(Mutex::default)
}

/// The value of `key` and its CAS token.
pub fn get(vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
    let m = map().lock().unwrap_or_else(|p| p.into_inner());
    m.get(&(vm_id.to_string(), key.to_string())).cloned()
}

/// Sets `key`; `cas` non-zero must match the current token (`CasMismatch` otherwise).
pub fn set(vm_id: &str, key: &str, value: Vec<u8>, cas: u32) -> i32 {
    let mut m = map().lock().unwrap_or_else(|p| p.into_inner());
    let k = (vm_id.to_string(), key.to_string());
    match m.get_mut(&k) {
        Some((v, token)) => {
            if cas != 0 && cas != *token {
                return CAS_MISMATCH;
            }
            *v = value;
            *token = token.wrapping_add(1).max(1);
        }
        // Envoy inserts an absent key whatever the token.
        None => {
            m.insert(k, (value, 1));
        }
    }
    OK
}

#[cfg(test)]
mod tests {
    #[test]
    fn compare_and_swap() {
        assert_eq!(super::set("t", "k", b"1".to_vec(), 0), super::OK);
        let (v, cas) = super::get("t", "k").unwrap();
        assert_eq!(v, b"1");
        assert_eq!(
            super::set("t", "k", b"2".to_vec(), cas + 7),
            super::CAS_MISMATCH
        );
        assert_eq!(super::set("t", "k", b"2".to_vec(), cas), super::OK);
        assert_eq!(super::get("t", "k").unwrap().0, b"2");
        assert!(super::get("u", "k").is_none());
    }
}
