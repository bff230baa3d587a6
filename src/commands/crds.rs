//! `crds`: the CustomResourceDefinitions generated from the code.

use kube::CustomResourceExt;

use crate::api::{ExpensifyConnector, PolicyAccess};

/// Both CRDs as one multi-document YAML text (what `crds/` holds).
pub fn crds_yaml() -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in [ExpensifyConnector::crd(), PolicyAccess::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

pub fn run() -> anyhow::Result<i32> {
    print!("{}", crds_yaml()?);
    Ok(0)
}
