//! orl's typed errors as Python exceptions, with the same messages as the CLI.
//!
//! | orl error | Python exception |
//! |---|---|
//! | an I/O failure (`DataError::Io`, `NetError::Io`, `AppError::Io`) | `OSError` |
//! | bad data, a bad setting, an unknown environment or estimator, a checkpoint that is not orl's | `ValueError` |
//! | a diverged update, a failed computation | `RuntimeError` |
//!
//! The message is the error's text followed by its sources (`: `-joined), so a Python user
//! reads what `orl` on the command line prints after `error:`.

use std::error::Error;

use orl_algos::AlgoError;
use orl_app::AppError;
use orl_data::DataError;
use orl_nets::NetError;
use pyo3::PyErr;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};

/// `e` and its sources as one line.
pub fn message(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

/// Which Python exception an orl error becomes (see the module doc).
enum Kind {
    Os,
    Value,
    Runtime,
}

fn kind_data(e: &DataError) -> Kind {
    match e {
        DataError::Io { .. } => Kind::Os,
        _ => Kind::Value,
    }
}

fn kind_net(e: &NetError) -> Kind {
    match e {
        NetError::Io { .. } => Kind::Os,
        NetError::Checkpoint { .. } | NetError::Config(_) | NetError::DuplicateParam(_) => {
            Kind::Value
        }
        _ => Kind::Runtime,
    }
}

fn kind_algo(e: &AlgoError) -> Kind {
    match e {
        AlgoError::Data(d) => kind_data(d),
        AlgoError::Net(n) => kind_net(n),
        AlgoError::Diverged { .. } => Kind::Runtime,
        _ => Kind::Value,
    }
}

fn raise(kind: Kind, msg: String) -> PyErr {
    match kind {
        Kind::Os => PyOSError::new_err(msg),
        Kind::Value => PyValueError::new_err(msg),
        Kind::Runtime => PyRuntimeError::new_err(msg),
    }
}

/// A data-layer error as a Python exception.
pub fn data(e: DataError) -> PyErr {
    raise(kind_data(&e), message(&e))
}

/// A training-layer error as a Python exception.
pub fn algo(e: AlgoError) -> PyErr {
    raise(kind_algo(&e), message(&e))
}

/// A run-folder error as a Python exception.
pub fn app(e: AppError) -> PyErr {
    let kind = match &e {
        AppError::Data(d) => kind_data(d),
        AppError::Algo(a) => kind_algo(a),
        AppError::Io { .. } => Kind::Os,
        AppError::Diverged { .. } | AppError::Interrupted { .. } => Kind::Runtime,
        _ => Kind::Value,
    };
    raise(kind, message(&e))
}

/// An OPE error as a Python exception.
pub fn ope(e: orl_ope::OpeError) -> PyErr {
    let kind = match &e {
        orl_ope::OpeError::Net(n) => kind_net(n),
        orl_ope::OpeError::NonFinite { .. } => Kind::Runtime,
        _ => Kind::Value,
    };
    raise(kind, message(&e))
}

/// An environment error as a Python exception.
pub fn env(e: orl_envs::EnvError) -> PyErr {
    raise(Kind::Value, message(&e))
}

/// A `ValueError` naming what was wrong.
pub fn value(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
