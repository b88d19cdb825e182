//! End-to-end tests through the real `chiso` binary and HTTP: one test binary for all of them.

mod backup;
mod clients;
mod crash;
mod demo;
mod faults;
mod flight;
mod format;
mod import;
mod serve;
mod support;
mod tables;
mod verify;
