"""Wallets, the ledger, holds, prices and usage (filled in by the billing issue)."""
