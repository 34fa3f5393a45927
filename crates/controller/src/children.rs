//! The Deployments and Services the controller made, as its watches last
//! saw them, and what it last applied to each: so that a reconcile of a
//! Function whose children already match its spec makes no API call at all.
//!
//! Without this, every reconcile read both children (two GETs) and applied
//! both (two PATCHes, no-ops at the server) — on every Deployment status
//! change the controller manager makes and on every resync: at 10,000
//! Functions, 40,000 requests per resync with nothing changed.
//!
//! The rule ([`Memo::current`]) is pure: a child is left alone when the
//! object the watch shows is the very one this process wrote last (same
//! uid, and the same generation for a Deployment or resourceVersion for a
//! Service) from the same desired object (same digest). Anything else —
//! someone edited it (a Deployment's generation moves with any spec edit),
//! deleted it (a new uid, or none), the spec changed (a new digest), or
//! another leader wrote since — applies again, as before.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;
use siesta_api::names::FunctionKey;

use crate::deployment_view::DeploymentView;

/// The watched children, and what was applied to them.
pub struct Children {
    pub deployments: Store<DeploymentView>,
    /// Only their metadata: nothing else of a Service is read.
    pub services: Store<PartialObjectMeta<Service>>,
    memo: Mutex<Memo>,
}

impl Children {
    pub fn new(
        deployments: Store<DeploymentView>,
        services: Store<PartialObjectMeta<Service>>,
    ) -> Self {
        Self {
            deployments,
            services,
            memo: Mutex::new(Memo::default()),
        }
    }

    /// The Deployment and Service (its metadata) of a Function's name, as
    /// last watched.
    pub fn cached(
        &self,
        key: &FunctionKey,
    ) -> (Option<DeploymentView>, Option<PartialObjectMeta<Service>>) {
        let at = ObjectRef::new(&key.name).within(&key.namespace);
        (
            self.deployments.get(&at).map(|d| d.as_ref().clone()),
            self.services
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(|s| s.as_ref().clone()),
        )
    }

    pub fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        // A panic while holding the lock leaves a map that is still valid.
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which child of a Function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Deployment,
    Service,
}

/// One write: the digest of the desired object and the object as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub digest: u64,
    pub uid: String,
    /// A Deployment's generation, a Service's resourceVersion.
    pub version: String,
}

/// What this process last applied, per Function and child.
#[derive(Default)]
pub struct Memo {
    written: HashMap<(FunctionKey, Child), Written>,
}

impl Memo {
    /// Whether `live` (uid, version), as the watch shows it, is what was
    /// last written from `digest`: then applying again would change nothing.
    pub fn current(
        &self,
        key: &FunctionKey,
        child: Child,
        digest: u64,
        live: Option<(&str, &str)>,
    ) -> bool {
        match (self.written.get(&(key.clone(), child)), live) {
            (Some(w), Some((uid, version))) => {
                w.digest == digest && w.uid == uid && w.version == version
            }
            _ => false,
        }
    }

    pub fn wrote(&mut self, key: &FunctionKey, child: Child, written: Option<Written>) {
        let k = (key.clone(), child);
        match written {
            Some(w) => {
                self.written.insert(k, w);
            }
            None => {
                self.written.remove(&k);
            }
        }
    }

    /// Drops what is known of Functions for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&FunctionKey) -> bool) {
        self.written.retain(|(key, _), _| keep(key));
    }

    pub fn len(&self) -> usize {
        self.written.len()
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

/// A digest of a desired object: equal objects, equal digests (within one
/// process; the memo never leaves it).
pub fn digest(desired: &impl Serialize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match serde_json::to_vec(desired) {
        Ok(bytes) => bytes.hash(&mut h),
        // Unserializable never matches a memo entry of a serializable one:
        // it is applied (and the apply reports the error).
        Err(_) => u64::MAX.hash(&mut h),
    }
    h.finish()
}

/// (uid, generation) of a Deployment, as the memo compares them.
pub fn deployment_version(d: &DeploymentView) -> Option<(String, String)> {
    Some((d.metadata.uid.clone()?, d.metadata.generation?.to_string()))
}

/// (uid, resourceVersion) of a Service, from its metadata.
pub fn service_version(meta: &ObjectMeta) -> Option<(String, String)> {
    Some((meta.uid.clone()?, meta.resource_version.clone()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FunctionKey {
        FunctionKey::new("demo", "hello")
    }

    fn written(digest: u64, uid: &str, version: &str) -> Option<Written> {
        Some(Written {
            digest,
            uid: uid.into(),
            version: version.into(),
        })
    }

    #[test]
    fn the_object_last_written_from_the_same_spec_is_current() {
        let mut m = Memo::default();
        m.wrote(&key(), Child::Deployment, written(7, "u1", "3"));
        assert!(m.current(&key(), Child::Deployment, 7, Some(("u1", "3"))));
    }

    #[test]
    fn an_edit_a_new_spec_a_recreation_or_no_object_apply_again() {
        let mut m = Memo::default();
        m.wrote(&key(), Child::Deployment, written(7, "u1", "3"));
        assert!(
            !m.current(&key(), Child::Deployment, 7, Some(("u1", "4"))),
            "edited: generation moved"
        );
        assert!(
            !m.current(&key(), Child::Deployment, 8, Some(("u1", "3"))),
            "new spec"
        );
        assert!(
            !m.current(&key(), Child::Deployment, 7, Some(("u2", "3"))),
            "deleted and made again"
        );
        assert!(
            !m.current(&key(), Child::Deployment, 7, None),
            "gone, or not watched yet"
        );
        assert!(
            !m.current(&key(), Child::Service, 7, Some(("u1", "3"))),
            "another child"
        );
        assert!(
            !m.current(
                &FunctionKey::new("demo", "other"),
                Child::Deployment,
                7,
                Some(("u1", "3"))
            ),
            "another Function"
        );
    }

    #[test]
    fn nothing_is_current_before_a_write_or_after_it_is_forgotten() {
        let mut m = Memo::default();
        assert!(!m.current(&key(), Child::Service, 1, Some(("u", "1"))));
        m.wrote(&key(), Child::Service, written(1, "u", "1"));
        m.wrote(&key(), Child::Service, None);
        assert!(!m.current(&key(), Child::Service, 1, Some(("u", "1"))));
        m.wrote(&key(), Child::Service, written(1, "u", "1"));
        m.retain(|k| k.name != "hello");
        assert!(m.is_empty());
    }

    #[test]
    fn equal_objects_have_equal_digests_and_different_ones_differ() {
        let a = serde_json::json!({"spec": {"image": "a"}});
        let b = serde_json::json!({"spec": {"image": "b"}});
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&b));
    }
}
