"""The data plane (/v1, /v1beta): async views that apps call with an inference key."""
