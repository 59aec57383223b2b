import json

from django.core.management.base import BaseCommand, CommandError

from console.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or refresh) the demo user and account. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            metavar="DAYS",
            help="Also write DAYS days of realistic usage for the demo keys.",
        )

    def handle(self, *args, **options):
        if not 0 <= options["history"] <= 400:
            raise CommandError("--history takes 0 to 400 days.")
        result = seed_demo(history_days=options["history"])
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"Demo login: {result['email']} / {result['password']}")
        self.stdout.write(f"Demo account: {result['account']}")
        self.stdout.write(f"Management key: {result['management_key']}")
        for group, key in result["keys"].items():
            self.stdout.write(f"Inference key for {group}: {key}")
