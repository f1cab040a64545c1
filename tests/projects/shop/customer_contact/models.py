from django.db import models


class CustomerContact(models.Model):
    customer = models.ForeignKey("customer.Customer", on_delete=models.CASCADE, related_name="contacts")
    phone = models.CharField(max_length=32)
    note = models.TextField(blank=True)

    def __str__(self):
        return self.phone
