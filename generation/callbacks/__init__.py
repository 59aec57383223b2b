"""Task callbacks: signed webhooks (Standard Webhooks) to the URL a task was submitted with.

One module per concern: ``targets`` (where we may connect), ``signing`` (what we send),
``transport`` (sending, pinned to a checked address), ``services`` (when we send: the retry
schedule and the deliveries) and ``selectors`` (the console's reads). Import from the module
that owns a name; this package re-exports nothing.
"""
