"""What task callbacks tell the apps above generation, which it cannot import."""

from django.dispatch import Signal

# An attempt of a callback delivery was recorded (by a worker, or a redelivery from the
# console), with ``account_id`` and ``delivered`` (bool). Receivers must stay cheap.
callback_attempted = Signal()
