//! The accountants against Opacus and Google's dp-accounting, run from the venv on the same
//! inputs: the public reference values, then a grid (q from 1e-4 to 1, σ from 0.5 to 10, up to
//! 1e5 steps). Agreement is 1e-3 relative, and our bounds are never below the reference's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use trainer_sidecar::accountants::{self, Accountant, SubsampledGaussian, rdp};

const DELTA: f64 = 1e-5;
const REL: f64 = 1e-3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference(spec: &Value) -> Value {
    let python = root().join(".venv/bin/python");
    let script = root().join("trainer-sidecar/tests/reference/accountants.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn grid() -> Vec<(f64, f64, u64)> {
    let mut cases = Vec::new();
    for q in [1e-4, 1e-3, 0.01, 0.04, 0.1, 0.5, 1.0] {
        for sigma in [0.5, 0.8, 1.0, 1.5, 3.0, 10.0] {
            for steps in [1, 10, 1000, 100_000] {
                cases.push((q, sigma, steps));
            }
        }
    }
    cases
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn m(q: f64, sigma: f64) -> SubsampledGaussian {
    SubsampledGaussian::new(q, sigma).unwrap()
}

#[test]
fn public_reference_values() {
    // Opacus's own test values (../shared/notes/references.md §3).
    let rdp = accountants::epsilon(Accountant::Rdp, m(0.04, 1.5), 2250, DELTA).unwrap();
    assert!(rel(rdp.epsilon, 7.329_111_171_43) < REL, "{rdp:?}");
    assert!(rdp.epsilon >= 7.329_111_171_43, "below Opacus: {rdp:?}");
    let prv = accountants::epsilon(Accountant::Prv, m(0.04, 1.5), 2249, DELTA).unwrap();
    assert!(rel(prv.epsilon, 6.777_395_712_150_674) < REL, "{prv:?}");
    let gdp = accountants::epsilon(Accountant::Gdp, m(0.04, 1.5), 2249, DELTA).unwrap();
    assert!(gdp.epsilon > 6.59 && gdp.epsilon < 6.60, "{gdp:?}");
    assert!(gdp.approximation);
    let s = accountants::noise_multiplier(Accountant::Rdp, 8.0, 0.04, 2250, DELTA).unwrap();
    assert!(rel(s, 1.416) < REL, "rdp noise {s}");
    let s = accountants::noise_multiplier(Accountant::Prv, 8.0, 0.04, 2250, DELTA).unwrap();
    assert!(rel(s, 1.3477) < REL, "prv noise {s}");
}

#[test]
fn rdp_and_gdp_agree_with_opacus_and_dp_accounting_on_a_grid() {
    let cases = grid();
    let spec: Vec<Value> = cases
        .iter()
        .map(|&(q, sigma, steps)| json!({"q": q, "sigma": sigma, "steps": steps, "delta": DELTA}))
        .collect();
    let refs = reference(&json!({"rdp": spec, "gdp": spec}));
    let orders = rdp::default_orders();
    let (mut worst_opacus, mut worst_google, mut worst_order, mut worst_gdp) =
        (0f64, 0f64, 0f64, 0f64);
    let (mut google_compared, mut gdp_compared, mut libraries_differ) = (0, 0, 0);
    for (i, &(q, sigma, steps)) in cases.iter().enumerate() {
        let ours = accountants::epsilon(Accountant::Rdp, m(q, sigma), steps, DELTA)
            .unwrap_or_else(|e| panic!("q={q} s={sigma} T={steps}: {e}"))
            .epsilon;
        let r = &refs["rdp"][i];
        let opacus = r["opacus"]
            .as_f64()
            .unwrap_or_else(|| panic!("opacus refused {r}"));
        let d = rel(ours, opacus);
        assert!(
            d < REL,
            "RDP q={q} s={sigma} T={steps}: ours {ours} opacus {opacus}"
        );
        assert!(
            ours >= opacus * (1.0 - 1e-9),
            "below Opacus: {ours} < {opacus}"
        );
        worst_opacus = worst_opacus.max(d);
        // dp-accounting 0.6 differs from Opacus in three ways: it sums the fractional-order
        // series by magnitude (a looser A_α), drops orders whose series has not converged after
        // 1000 terms, and bounds δ by √(1 - e^-KL) (ε = 0 for tiny RDP). Integer orders use the
        // same formula: there the RDP curves must agree. Elsewhere dp-accounting is looser:
        // ours must not exceed it, and must agree to 1e-3 wherever the two libraries do.
        let per_order = r["google_orders"].as_array().unwrap();
        for (k, alpha) in orders.iter().enumerate() {
            let Some(g) = per_order[k].as_f64() else {
                continue;
            };
            let o = rdp::rdp_step(m(q, sigma), *alpha).unwrap() * steps as f64;
            if alpha.fract() == 0.0 {
                let d = rel(o, g);
                assert!(
                    d < 1e-6,
                    "RDP(α={alpha}) q={q} s={sigma} T={steps}: {o} vs {g}"
                );
                worst_order = worst_order.max(d);
            } else {
                assert!(
                    o <= g * (1.0 + 1e-9),
                    "RDP(α={alpha}) q={q} s={sigma} T={steps}: {o} > {g}"
                );
            }
        }
        let google = r["google"].as_f64().unwrap();
        assert!(
            ours <= google * (1.0 + 1e-9) || google == 0.0,
            "q={q} s={sigma} T={steps}: ours {ours} above dp-accounting {google}"
        );
        if rel(opacus, google) < REL {
            let d = rel(ours, google);
            assert!(
                d < REL,
                "RDP q={q} s={sigma} T={steps}: ours {ours} dp-accounting {google}"
            );
            worst_google = worst_google.max(d);
            google_compared += 1;
        } else {
            libraries_differ += 1;
        }
        // GDP: an approximation; compare where Opacus's root finder has a root in [0, 500].
        let g = &refs["gdp"][i]["opacus"];
        match (
            accountants::epsilon(Accountant::Gdp, m(q, sigma), steps, DELTA),
            g.as_f64(),
        ) {
            (Ok(ours), Some(opacus)) => {
                let d = (ours.epsilon - opacus).abs() / opacus.max(1e-3);
                assert!(
                    d < REL,
                    "GDP q={q} s={sigma} T={steps}: {} vs {opacus}",
                    ours.epsilon
                );
                worst_gdp = worst_gdp.max(d);
                gdp_compared += 1;
            }
            (Err(_), None) => {}
            // δ(0) is already below δ: ε = 0, where SciPy's bracket [0, 500] has no sign change.
            (Ok(ours), None) if ours.epsilon == 0.0 => {}
            (ours, theirs) => panic!("GDP q={q} s={sigma} T={steps}: {ours:?} vs {theirs:?}"),
        }
    }
    println!(
        "{} cases: worst relative difference RDP vs Opacus {worst_opacus:.2e}, vs dp-accounting \
         {worst_google:.2e} ({google_compared} cases where the libraries agree; they differ by more \
         than 1e-3 in {libraries_differ}), integer orders {worst_order:.2e}; GDP vs Opacus \
         {worst_gdp:.2e} ({gdp_compared} cases)",
        cases.len()
    );
    assert!(google_compared > cases.len() / 2);
}

#[test]
fn prv_agrees_with_opacus_and_brackets_dp_accounting_pld() {
    // PRV costs an FFT per case on both sides: a diagonal of the grid, ε from ~0.1 to ~50.
    let cases: Vec<(f64, f64, u64, bool)> = vec![
        (1e-4, 0.8, 100_000, true),
        (1e-3, 0.8, 100_000, false),
        (1e-3, 1.0, 10_000, true),
        (0.01, 1.0, 1000, true),
        (0.01, 3.0, 100_000, false),
        (0.04, 1.5, 2249, true),
        (0.04, 0.8, 1000, false),
        (0.1, 1.0, 100, true),
        (0.1, 3.0, 10_000, false),
        (0.5, 1.5, 100, false),
        (1.0, 3.0, 10, true),
        (1.0, 10.0, 1000, false),
    ];
    let spec: Vec<Value> = cases
        .iter()
        .map(|&(q, sigma, steps, pld)| {
            json!({"q": q, "sigma": sigma, "steps": steps, "delta": DELTA, "pld": pld})
        })
        .collect();
    let refs = reference(&json!({"prv": spec}));
    let mut worst = 0f64;
    for (i, &(q, sigma, steps, _)) in cases.iter().enumerate() {
        let r = &refs["prv"][i];
        let ours = accountants::prv::epsilon(m(q, sigma), steps, DELTA, Default::default());
        let opacus = r["opacus"].as_f64();
        match (ours, opacus) {
            (Ok(ours), Some(opacus)) => {
                let d = rel(ours.upper, opacus);
                assert!(
                    d < REL,
                    "PRV q={q} s={sigma} T={steps}: {} vs {opacus}",
                    ours.upper
                );
                worst = worst.max(d);
                // dp-accounting's PLD is a different discretisation of the same quantity: it
                // must fall inside the interval PRV proves.
                // dp-accounting's pessimistic PLD is an upper bound on the true ε, which PRV's
                // interval contains: PLD can never be below PRV's lower end.
                if let Some(pld) = r["google_pld"].as_f64() {
                    assert!(
                        ours.lower <= pld * (1.0 + 1e-9),
                        "PLD {pld} below PRV's lower end {} at q={q} s={sigma} T={steps}",
                        ours.lower
                    );
                    println!(
                        "q={q} σ={sigma} T={steps}: PRV [{:.4}, {:.4}], Opacus {opacus:.4}, PLD {pld:.4}",
                        ours.lower, ours.upper
                    );
                }
                // And RDP, also a bound, is never tighter than PRV's upper end by more than the
                // discretisation error.
                let rdp = accountants::epsilon(Accountant::Rdp, m(q, sigma), steps, DELTA).unwrap();
                assert!(
                    ours.lower <= rdp.epsilon,
                    "PRV above RDP at q={q} s={sigma} T={steps}"
                );
            }
            (ours, opacus) => {
                panic!("PRV q={q} s={sigma} T={steps}: ours {ours:?}, opacus {r} ({opacus:?})")
            }
        }
    }
    println!(
        "PRV: {} cases, worst relative difference vs Opacus {worst:.2e}",
        cases.len()
    );
}

#[test]
fn noise_calibration_agrees_with_opacus() {
    // Opacus bisects until ε is within a tolerance below the target; with a tight tolerance its
    // σ converges on the smallest one, which is what ours returns.
    let cases = [
        (1.0, 0.01, 1000u64, "rdp"),
        (3.0, 0.04, 2250, "rdp"),
        (8.0, 0.001, 100_000, "rdp"),
        (0.5, 0.1, 100, "rdp"),
        (2.0, 0.01, 5000, "prv"),
    ];
    let spec: Vec<Value> = cases
        .iter()
        .map(|&(e, q, t, a)| {
            json!({"epsilon": e, "q": q, "steps": t, "delta": DELTA, "accountant": a, "tolerance": 1e-4})
        })
        .collect();
    let refs = reference(&json!({"noise": spec}));
    for (i, &(e, q, t, a)) in cases.iter().enumerate() {
        let acc = if a == "rdp" {
            Accountant::Rdp
        } else {
            Accountant::Prv
        };
        let ours = accountants::noise_multiplier(acc, e, q, t, DELTA).unwrap();
        let opacus = refs["noise"][i]["opacus"].as_f64().unwrap();
        assert!(
            rel(ours, opacus) < REL,
            "{a} eps={e} q={q} T={t}: {ours} vs {opacus}"
        );
        // Ours is the smallest σ that reaches the target.
        let spent = accountants::epsilon(acc, m(q, ours), t, DELTA)
            .unwrap()
            .epsilon;
        assert!(spent <= e, "σ={ours} spends {spent} > {e}");
        let less = accountants::epsilon(acc, m(q, ours * (1.0 - 1e-4)), t, DELTA)
            .unwrap()
            .epsilon;
        assert!(less > e, "a smaller σ also reaches {e}");
    }
}

#[test]
fn cli_prints_the_documented_json_and_clear_errors() {
    let bin = env!("CARGO_BIN_EXE_trainer-sidecar");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let json = |args: &str| -> Value {
        let out = run(&args.split_whitespace().collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = json("epsilon --sample-rate 0.04 --noise-multiplier 1.5 --steps 2250 --delta 1e-5");
    assert!(rel(v["epsilon"].as_f64().unwrap(), 7.329_111_171_43) < REL);
    assert_eq!(v["accountant"], "rdp");
    assert!(v["order"].as_f64().is_some());
    let v = json("epsilon -q 0.04 -s 1.5 -t 2249 -d 1e-5 --accountant prv");
    assert_eq!(v["accountant"], "prv");
    assert!(v.get("order").is_none());
    let v = json("epsilon -q 0.04 -s 1.5 -t 2249 -d 1e-5 --accountant gdp");
    assert_eq!(v["approximation"], true);
    let v = json("noise --target-epsilon 8 --sample-rate 0.04 --steps 2250 --delta 1e-5");
    assert!(rel(v["noise_multiplier"].as_f64().unwrap(), 1.416) < REL);
    // Bad input and unbounded cases: exit 1 with a message, never a number.
    for (args, needle) in [
        (
            vec!["epsilon", "-q", "1.5", "-s", "1", "-t", "10", "-d", "1e-5"],
            "sample rate must be in [0, 1]",
        ),
        (
            vec!["epsilon", "-q", "0.1", "-s", "0", "-t", "10", "-d", "1e-5"],
            "noise multiplier must be positive",
        ),
        (
            vec!["epsilon", "-q", "0.1", "-s", "1", "-t", "10", "-d", "2"],
            "delta must be in (0, 1)",
        ),
        (
            vec![
                "epsilon",
                "-q",
                "1",
                "-s",
                "0.5",
                "-t",
                "100000",
                "-d",
                "1e-5",
                "--accountant",
                "prv",
            ],
            "cannot bound epsilon",
        ),
        (
            vec![
                "noise", "-e", "0.001", "-q", "1", "-t", "100000", "-d", "1e-5",
            ],
            "budget is too small",
        ),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
