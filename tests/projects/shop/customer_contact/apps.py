from django.apps import AppConfig


class CustomerContactConfig(AppConfig):
    name = "customer_contact"
