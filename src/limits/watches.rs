//! The per-tenant cap of open change streams: a count per tenant, taken
//! when a watch starts and given back by a guard that ends with the
//! stream, however it ends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Open watches per tenant, at most `max` each.
#[derive(Clone)]
pub struct WatchSlots {
    open: Arc<Mutex<HashMap<String, usize>>>,
    max: usize,
}

/// One open watch of a tenant; dropping it frees the slot.
#[derive(Debug)]
pub struct WatchSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl WatchSlots {
    /// At most `max` open watches per tenant.
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more watch of `tenant`; `None` when it has `max` open.
    pub fn open(&self, tenant: &str) -> Option<WatchSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(tenant.to_owned()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(WatchSlot {
            open: self.open.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Watches `tenant` has open.
    pub fn count(&self, tenant: &str) -> usize {
        lock(&self.open).get(tenant).copied().unwrap_or(0)
    }

    /// Tenants with a watch open (the map keeps no others).
    pub fn tenants(&self) -> usize {
        lock(&self.open).len()
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// The map, even if a thread panicked holding it: counts are updated in
/// one step, so they are never half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_cap_and_a_freed_slot_opens_again() {
        let slots = WatchSlots::new(2);
        let first = slots.open("a").expect("first");
        let _second = slots.open("a").expect("second");
        assert!(slots.open("a").is_none(), "a third over the cap");
        let _other = slots.open("b").expect("another tenant has its own cap");
        drop(first);
        assert_eq!(slots.count("a"), 1);
        let _third = slots.open("a").expect("the freed slot");
        assert!(slots.open("a").is_none());
    }

    #[test]
    fn tenants_without_open_watches_are_forgotten() {
        let slots = WatchSlots::new(1);
        let held: Vec<_> = (0..100)
            .map(|i| slots.open(&format!("t{i}")).expect("slot"))
            .collect();
        assert!(slots.open("t0").is_none());
        assert_eq!(slots.tenants(), 100);
        drop(held);
        assert_eq!(slots.tenants(), 0);
    }
}
