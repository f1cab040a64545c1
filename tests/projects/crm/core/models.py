from django.conf import settings
from django.db import models


class Protein(models.Model):
    name = models.CharField(max_length=100, unique=True)


class Subscription(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.CharField(max_length=32)


class UserPreferences(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.SET_NULL, null=True, blank=True)
    theme = models.CharField(max_length=16, default="light")
