//! The conformance suite every statekit backend must pass, and the model it is checked
//! against.
//!
//! A backend's test file implements [`BackendFactory`] and calls [`conformance_suite!`],
//! which expands to one `#[test]` per case in [`conformance`] plus the differential property
//! test of [`model`]. Cases use real components (a real file system for checkpoints, the
//! backend's real engine) and a [`ManualClock`](statekit_backend::clock::ManualClock) for TTL.

pub mod conformance;
pub mod fixtures;
pub mod model;

use std::sync::Arc;

use statekit_backend::{CheckpointStorage, InstanceConfig, Result, StateBackend};

/// Opens instances of the backend under test.
pub trait BackendFactory: Sized {
    /// The backend type.
    type Backend: StateBackend;

    /// A factory for one test (it may hold temporary directories).
    fn new() -> Self;

    /// A new, empty, independent instance. May be called several times in one test (restore
    /// into a fresh instance, rescaling into several).
    ///
    /// # Errors
    /// Whatever opening the backend fails with.
    fn open(&self, config: InstanceConfig) -> Result<Self::Backend>;

    /// The checkpoint storage the suite should use; `None` lets the suite use a local
    /// directory.
    fn checkpoint_storage(&self) -> Option<Arc<dyn CheckpointStorage>> {
        None
    }
}

/// Expands to one `#[test]` per conformance case for the given [`BackendFactory`] type.
///
/// `conformance_suite!(Factory, skip_unless_env = "VAR")` skips every case, with a printed
/// notice, when the environment variable `VAR` is unset: for backends that need a server
/// (the test script starts it and sets the variable).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:ty) => {
        $crate::conformance_suite!(@all $factory; None);
    };
    ($factory:ty, skip_unless_env = $var:literal) => {
        $crate::conformance_suite!(@all $factory; Some($var));
    };
    (@all $factory:ty; $guard:expr) => {
        $crate::conformance_suite!(@cases $factory; $guard;
            get_of_missing_entry_is_none,
            put_overwrites_and_delete_removes,
            empty_and_16_mib_values,
            binary_and_unicode_keys,
            scopes_are_isolated,
            merge_appends,
            merges_only_onto_list_and_map_states,
            ttl_append_chain_outlives_its_base,
            scan_bounds_and_directions,
            scan_stops_and_propagates_errors,
            prefix_iteration,
            delete_range_bounds,
            clear_state_and_clear_timers_remove_all_and_only_theirs,
            multi_get_keeps_request_order,
            key_group_boundaries,
            invalid_arguments_are_errors,
            state_registration,
            ttl_expiry,
            timers_fire_in_order,
            timer_registrations_are_seen_by_every_read_and_by_checkpoints,
            write_batch_is_atomic,
            range_deletes_in_one_batch,
            checkpoint_then_restore_equals_original,
            restore_of_a_key_group_sub_range,
            rescale_two_to_three_and_one,
            restore_replaces_later_writes,
            restore_keeps_state_ids,
            incomplete_or_damaged_checkpoints_are_rejected,
            checkpoint_ids_increase_and_old_ones_are_retired,
            retention_waits_for_the_engine,
            operators_sharing_a_storage_keep_their_checkpoints_apart,
            differential_against_model
        );
    };
    (@cases $factory:ty; $guard:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if !$crate::required_env_is_set($guard) {
                    return;
                }
                $crate::conformance::$case::<$factory>();
            }
        )*
    };
}

/// Whether the variable a suite depends on is set; prints a skip notice when it is not.
#[doc(hidden)]
pub fn required_env_is_set(var: Option<&str>) -> bool {
    match var {
        Some(var) if std::env::var_os(var).is_none() => {
            eprintln!("skipped: {var} is not set (the test script starts the server and sets it)");
            false
        }
        _ => true,
    }
}
