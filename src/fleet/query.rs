//! `fimd fleet events|hosts|prevalence|gaps`: the reader side.
