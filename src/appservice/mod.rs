//! Application services (bridges and bots): the registrations
//! (`registry`), and what the server does for them.

pub mod registry;
