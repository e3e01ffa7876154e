//! CustomerService: records, classification, lists and counts.
