from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self):
        from generation import health
        from generation.breakers import breakers

        # The callback runs inside the event loop: it only queues the audit event, which the
        # attempt statistics' next flush writes from its own thread.
        breakers.on_trip(health.recorder.tripped)
