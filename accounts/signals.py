"""What accounts tells the apps built on it, so that it need not know them."""

from django.dispatch import Signal

# Sent inside the transaction that creates an account (with ``account``): billing opens its wallet
# there, so an account never exists without one.
account_created = Signal()
