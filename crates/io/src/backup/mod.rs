pub mod place;
pub mod take;
