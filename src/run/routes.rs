//! The routes of a serving process: the static mounts and the proxy and prefix rules, which
//! for a Django project come partly from its settings, and the hook that labels Django
//! requests with their views. Read after the application is imported, before anything binds.

use pyo3::prelude::*;

use super::Target;
use crate::config::Plan;
use crate::error::Error;
use crate::http::proxy::Proxy;
use crate::static_files::{self, StaticFiles};
use crate::{app, log_warn};

/// Static mounts and the proxy/prefix rules, which for a Django project come partly from its
/// settings (read after the import, before anything binds).
pub(super) fn routes(py: Python<'_>, plan: &Plan, target: &Target) -> Result<Routes, Error> {
    let django = matches!(target, Target::Django) || app::django_configured(py);
    if django {
        // Labels requests with their Django view for the statistics.
        let hooked = py
            .import("ferrule._django")
            .and_then(|m| m.call_method0("install"))
            .and_then(|r| r.is_truthy());
        match hooked {
            Ok(true) => {}
            Ok(false) => log_warn!(
                "this Django version has no BaseHandler.resolve_request: statistics label its requests 'unresolved'"
            ),
            Err(e) => log_warn!(
                "cannot label Django requests with their views for the statistics: {e}"
            ),
        }
    }
    let force_script_name = if django {
        static_files::django::setting(py, "FORCE_SCRIPT_NAME")
            .map_err(|e| Error::app(format!("cannot read FORCE_SCRIPT_NAME: {e}")))?
    } else {
        None
    };
    let proxy = Proxy::new(&plan.proxy, force_script_name)?;
    let mounts = if django {
        static_files::django::mounts(py, &plan.statics, proxy.prefix())
            .map_err(|e| Error::app(format!("cannot find the static files settings: {e}")))?
    } else {
        Vec::new()
    };
    let statics = StaticFiles::new(&plan.statics, mounts)?;
    Ok(Routes {
        statics,
        proxy,
        django,
    })
}

/// What `routes` finds out about serving the application.
pub(super) struct Routes {
    pub statics: StaticFiles,
    pub proxy: Proxy,
    /// A Django project: its hook labels requests with views.
    pub django: bool,
}
