//! End-to-end tests: the real `flotilla` binary, real guest modules built by
//! `scripts/build-sample-modules.sh`, real files.

mod bundle;
mod chaos;
mod cluster;
mod config;
mod dashboard;
mod early_answers;
mod etcd;
mod fleet;
mod ha;
mod http;
mod jobs;
mod keyvalue;
mod maintenance;
mod metrics;
mod netns;
mod openapi;
mod quotas;
mod registry;
mod rollouts;
mod support;
mod tenancy;
mod trust;
mod volumes;

mod run_bad_input;
mod run_in_process;
mod run_limits;
mod run_outcomes;
mod run_sandbox;
mod up;
