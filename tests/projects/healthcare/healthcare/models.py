from django.conf import settings
from django.db import models


class UserProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    role = models.CharField(max_length=30, default="patient")

    class Meta:
        db_table = "user_profiles"


class Patient(models.Model):
    name = models.CharField(max_length=200)
    date_of_birth = models.DateField(null=True, blank=True)

    class Meta:
        db_table = "patients"


class FamilyHistory(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="family_history")
    condition = models.CharField(max_length=200)

    class Meta:
        db_table = "family_history"


class Billing(models.Model):
    billing_id = models.BigAutoField(primary_key=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="billings")
    invoice_number = models.CharField(max_length=40, unique=True)
    billing_date = models.DateField()
    total_amount = models.DecimalField(max_digits=10, decimal_places=2)
    notes = models.TextField(blank=True, default="")

    class Meta:
        db_table = "billings"


class Payment(models.Model):
    payment_id = models.BigAutoField(primary_key=True)
    billing = models.ForeignKey(Billing, on_delete=models.CASCADE, related_name="payments")
    payment_date = models.DateField()
    amount = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        db_table = "payments"
