//! The watches the leader's parts share: one of Functions, one of Siesta's
//! Deployments and one of its Services, each a reflector whose store the
//! reconciler, the autoscaler and the usage record read, and whose events
//! drive the reconciler.
//!
//! Before, the reconciler, the autoscaler and the usage record each watched
//! Functions, and the reconciler and the autoscaler each watched
//! Deployments: three copies of every Function and two of every Deployment
//! in memory (and as many watch streams) for one view of them.

use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use siesta_api::Function;
use siesta_api::watch_backoff::WatchBackoff;

use crate::context::Context;

/// Only children Siesta labelled are watched: less memory in big clusters.
pub const CHILDREN: &str = "app.kubernetes.io/managed-by=siesta";

pub type Events<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The stores, and the event streams that fill them. The streams must be
/// polled (the reconciler's Controller does) for the stores to fill.
pub struct Watches {
    pub functions: Store<Function>,
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    /// Functions changed (applied objects).
    pub function_events: Events<Function>,
    /// Children changed or deleted (touched objects): a deleted child is
    /// made again.
    pub deployment_events: Events<Deployment>,
    pub service_events: Events<Service>,
}

impl Watches {
    /// Of the namespace the controller serves, or of all.
    pub fn new(ctx: &Context) -> Self {
        let client = ctx.client.clone();
        let (functions, deployments, services) = match &ctx.watch_namespace {
            Some(ns) => (
                Api::<Function>::namespaced(client.clone(), ns),
                Api::<Deployment>::namespaced(client.clone(), ns),
                Api::<Service>::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };
        let children = watcher::Config::default().labels(CHILDREN);
        let (fn_store, fn_writer) = reflector::store();
        let (dep_store, dep_writer) = reflector::store();
        let (svc_store, svc_writer) = reflector::store();
        Self {
            functions: fn_store,
            deployments: dep_store,
            services: svc_store,
            function_events: Box::pin(
                reflector::reflector(fn_writer, watcher(functions, watcher::Config::default()))
                    .backoff(WatchBackoff::default())
                    .applied_objects(),
            ),
            deployment_events: Box::pin(
                reflector::reflector(dep_writer, watcher(deployments, children.clone()))
                    .backoff(WatchBackoff::default())
                    .touched_objects(),
            ),
            service_events: Box::pin(
                reflector::reflector(svc_writer, watcher(services, children))
                    .backoff(WatchBackoff::default())
                    .touched_objects(),
            ),
        }
    }
}
