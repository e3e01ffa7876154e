//! Exporting customers: every customer a filter selects, in pages, all
//! read in one snapshot, so the export is one state of the tenant and its
//! change-log position tells a consumer where to watch from.

use super::CustomerRecord;
use crate::{
    domain::{
        customer::{CustomerFilter, CustomerOrder},
        paging::{Cursor, PageRequest},
        tenant::RequestContext,
    },
    error::AppResult,
    store::{Snapshot, Store},
};

/// Customers per page of an export.
pub const EXPORT_PAGE: u64 = 1000;

/// An export under way: its snapshot and where the next page starts.
pub struct Export {
    store: Store,
    snapshot: Option<Snapshot>,
    ctx: RequestContext,
    filter: CustomerFilter,
    order: CustomerOrder,
    after: Option<Cursor>,
    /// The first page, read with the total.
    first: Option<Vec<CustomerRecord>>,
    /// The latest relationship change the snapshot reflects.
    pub sequence: i64,
    /// How many customers the export holds.
    pub total: u64,
}

impl Store {
    /// Starts exporting the customers `filter` selects, in `order`: opens
    /// the snapshot and reads the first page with the total (bad filters
    /// fail here, before anything is sent).
    pub async fn export_customers(
        &self,
        ctx: &RequestContext,
        filter: CustomerFilter,
        order: CustomerOrder,
    ) -> AppResult<Export> {
        let snapshot = self.snapshot_of(ctx.tenant.as_str()).await?;
        let page = PageRequest::internal(EXPORT_PAGE, None, true);
        let first = self.list_in(&snapshot, ctx, &filter, order, &page).await?;
        Ok(Export {
            store: self.clone(),
            sequence: snapshot.sequence(),
            snapshot: Some(snapshot),
            ctx: ctx.clone(),
            filter,
            order,
            after: first.next,
            total: first.total,
            first: Some(first.items),
        })
    }
}

impl Export {
    /// The next page; `None` after the last (the snapshot then ends).
    pub async fn next_page(&mut self) -> AppResult<Option<Vec<CustomerRecord>>> {
        if let Some(first) = self.first.take() {
            if self.after.is_none() {
                self.finish().await?;
            }
            return Ok(Some(first));
        }
        let Some(after) = self.after.take() else {
            self.finish().await?;
            return Ok(None);
        };
        let Some(snapshot) = &self.snapshot else {
            return Ok(None);
        };
        let page = PageRequest::internal(EXPORT_PAGE, Some(after), false);
        let read = self
            .store
            .list_in(snapshot, &self.ctx, &self.filter, self.order, &page)
            .await?;
        self.after = read.next;
        if self.after.is_none() {
            self.finish().await?;
        }
        Ok(Some(read.items))
    }

    async fn finish(&mut self) -> AppResult<()> {
        if let Some(snapshot) = self.snapshot.take() {
            snapshot.end(()).await?;
        }
        Ok(())
    }
}
