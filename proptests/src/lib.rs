//! ferry-proptests: property and state-machine tests of ferry. Everything is
//! in `tests/`; `PROPTEST_CASES` raises the number of cases for a soak run.
