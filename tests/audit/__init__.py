"""Audits run over the pure domain: simulations driven through the real rules, checked by independent code."""
