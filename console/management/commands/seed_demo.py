import json

from django.core.management.base import BaseCommand

from console.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or refresh) the demo user and account. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        result = seed_demo()
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"Demo login: {result['email']} / {result['password']}")
        self.stdout.write(f"Demo account: {result['account']}")
        self.stdout.write(f"Management key: {result['management_key']}")
        for group, key in result["keys"].items():
            self.stdout.write(f"Inference key for {group}: {key}")
