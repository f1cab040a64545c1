"""Insert deterministic sample rows into every local table; rows that already exist are skipped."""
import json
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalog.models import Category, Product
from customer.models import Customer
from customer_contact.models import CustomerContact

CATEGORY_NAMES = ["Books", "Garden", "Kitchen", "Music", "Tools"]


def customer_email(i):
    return f"customer{i:04d}@example.com"


def contact_phone(i):
    return f"+1-555-{i:04d}"


def product_sku(i):
    return f"SKU-{i:05d}"


def product_price(i):
    # Deterministic, varied, always positive: 1.00 .. 100.98
    return Decimal(100 + (i * 137) % 9999) / 100


class Command(BaseCommand):
    help = "Insert N deterministic customers, contacts and products (plus categories); skip existing rows."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=50, help="customers/contacts/products (default 50)")

    def handle(self, *args, rows, **options):
        if rows < 0:
            raise CommandError("--rows must be 0 or more")
        with transaction.atomic():
            created = {
                "customers": self.seed_customers(rows),
                "contacts": self.seed_contacts(rows),
                "categories": self.seed_categories(),
                "products": self.seed_products(rows),
            }
        totals = {
            "customers": Customer.objects.count(),
            "contacts": CustomerContact.objects.count(),
            "categories": Category.objects.count(),
            "products": Product.objects.count(),
        }
        self.stdout.write(json.dumps({"rows": rows, "created": created, "totals": totals}, sort_keys=True))

    def seed_customers(self, rows):
        emails = [customer_email(i) for i in range(1, rows + 1)]
        existing = set(Customer.objects.filter(email__in=emails).values_list("email", flat=True))
        new = [
            Customer(name=f"Customer {i:04d}", email=customer_email(i))
            for i in range(1, rows + 1)
            if customer_email(i) not in existing
        ]
        Customer.objects.bulk_create(new)
        return len(new)

    def seed_contacts(self, rows):
        emails = [customer_email(i) for i in range(1, rows + 1)]
        by_email = {c.email: c for c in Customer.objects.filter(email__in=emails)}
        contacts = CustomerContact.objects.filter(customer__in=by_email.values())
        existing = set(contacts.values_list("customer__email", "phone"))
        new = [
            CustomerContact(
                customer=by_email[customer_email(i)], phone=contact_phone(i), note=f"seed contact {i}"
            )
            for i in range(1, rows + 1)
            if (customer_email(i), contact_phone(i)) not in existing
        ]
        CustomerContact.objects.bulk_create(new)
        return len(new)

    def seed_categories(self):
        existing = set(Category.objects.filter(name__in=CATEGORY_NAMES).values_list("name", flat=True))
        new = [Category(name=name) for name in CATEGORY_NAMES if name not in existing]
        Category.objects.bulk_create(new)
        return len(new)

    def seed_products(self, rows):
        categories = {c.name: c for c in Category.objects.filter(name__in=CATEGORY_NAMES)}
        skus = [product_sku(i) for i in range(1, rows + 1)]
        existing = set(Product.objects.filter(sku__in=skus).values_list("sku", flat=True))
        new = [
            Product(
                sku=product_sku(i),
                name=f"Product {i:05d}",
                price=product_price(i),
                description=f"Sample product number {i}.",
                category=categories[CATEGORY_NAMES[i % len(CATEGORY_NAMES)]],
            )
            for i in range(1, rows + 1)
            if product_sku(i) not in existing
        ]
        Product.objects.bulk_create(new)
        return len(new)
