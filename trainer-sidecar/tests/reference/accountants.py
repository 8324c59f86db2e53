"""Reference privacy accounting from Opacus and Google's dp-accounting, for
trainer-sidecar/tests/accountants.rs. Reads cases as JSON on stdin, prints results as JSON.

Each library's value is reported, or the error it raised (as {"error": "..."}), so the Rust test
can tell "the reference refused" from "the reference disagrees".
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

import logging  # noqa: E402

# dp-accounting logs every order whose series does not converge; the per-order output says so.
logging.disable(logging.WARNING)

import dp_accounting  # noqa: E402
from dp_accounting.pld import pld_privacy_accountant  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant  # noqa: E402
from opacus.accountants import PRVAccountant, RDPAccountant  # noqa: E402
from opacus.accountants.analysis import gdp  # noqa: E402
from opacus.accountants.utils import get_noise_multiplier  # noqa: E402

OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def guarded(fn):
    try:
        value = fn()
        return value if value == value else {"error": "nan"}
    except Exception as e:  # the reference refusing is data for the test
        return {"error": f"{type(e).__name__}: {e}"}


def event(c):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(c["q"], dp_accounting.GaussianDpEvent(c["sigma"])),
        c["steps"],
    )


def opacus_rdp(c):
    acc = RDPAccountant()
    acc.history = [(c["sigma"], c["q"], c["steps"])]
    return float(acc.get_epsilon(c["delta"]))


def google_rdp(c):
    acc = rdp_privacy_accountant.RdpAccountant(OPACUS_ORDERS)
    acc.compose(event(c))
    return float(acc.get_epsilon(c["delta"]))


def google_rdp_orders(c):
    rdp = rdp_privacy_accountant._compute_rdp_poisson_subsampled_gaussian(
        c["q"], c["sigma"], OPACUS_ORDERS
    )
    return [float(r) * c["steps"] if r != float("inf") else None for r in rdp]


def opacus_prv(c):
    acc = PRVAccountant()
    acc.history = [(c["sigma"], c["q"], c["steps"])]
    return float(acc.get_epsilon(c["delta"]))


def google_pld(c):
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(event(c))
    return float(acc.get_epsilon(c["delta"]))


def opacus_gdp(c):
    return float(
        gdp.compute_eps_poisson(
            steps=c["steps"], noise_multiplier=c["sigma"], sample_rate=c["q"], delta=c["delta"]
        )
    )


def opacus_noise(c):
    return float(
        get_noise_multiplier(
            target_epsilon=c["epsilon"],
            target_delta=c["delta"],
            sample_rate=c["q"],
            steps=c["steps"],
            accountant=c["accountant"],
            epsilon_tolerance=c.get("tolerance", 0.01),
        )
    )


def main():
    spec = json.load(sys.stdin)
    out = {"rdp": [], "prv": [], "gdp": [], "noise": []}
    for c in spec.get("rdp", []):
        out["rdp"].append({"opacus": guarded(lambda: opacus_rdp(c)), "google": guarded(lambda: google_rdp(c)),
                            "google_orders": guarded(lambda: google_rdp_orders(c))})
    for c in spec.get("prv", []):
        pld = guarded(lambda: google_pld(c)) if c.get("pld") else None
        out["prv"].append({"opacus": guarded(lambda: opacus_prv(c)), "google_pld": pld})
    for c in spec.get("gdp", []):
        out["gdp"].append({"opacus": guarded(lambda: opacus_gdp(c))})
    for c in spec.get("noise", []):
        out["noise"].append({"opacus": guarded(lambda: opacus_noise(c))})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
