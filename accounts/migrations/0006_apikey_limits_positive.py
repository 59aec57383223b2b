"""A limit is never 0: NULL is "no limit". (A migration of its own: on PostgreSQL a table cannot
be altered in the transaction that updated its rows, while their deferred checks are pending.)"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_apikey_zero_limit_is_null"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("quota__isnull", True), ("quota__gt", 0), _connector="OR"),
                    models.Q(
                        ("rate_limit_5h__isnull", True), ("rate_limit_5h__gt", 0), _connector="OR"
                    ),
                    models.Q(
                        ("rate_limit_1d__isnull", True), ("rate_limit_1d__gt", 0), _connector="OR"
                    ),
                    models.Q(
                        ("rate_limit_7d__isnull", True), ("rate_limit_7d__gt", 0), _connector="OR"
                    ),
                    models.Q(("rpm__isnull", True), ("rpm__gt", 0), _connector="OR"),
                    models.Q(("tpm__isnull", True), ("tpm__gt", 0), _connector="OR"),
                    models.Q(
                        ("max_concurrent__isnull", True), ("max_concurrent__gt", 0), _connector="OR"
                    ),
                ),
                name="apikey_limits_positive",
            ),
        ),
    ]
