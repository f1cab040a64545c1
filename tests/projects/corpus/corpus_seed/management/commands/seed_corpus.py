"""Deterministic content in every package of the corpus: `python manage.py seed_corpus`.

Run once on a freshly migrated database; a second run finds its marker user and does nothing. Fixed
names, slugs, UUIDs and password strings (never a hash of a random salt) keep the content the same from
one seeding to the next, apart from the timestamps the packages stamp themselves (auto_now fields).
"""
import datetime
import uuid
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group, User
from django.contrib.sites.models import Site as DjangoSite
from django.core.management.base import BaseCommand
from django.db import transaction
from oscar.apps.catalogue.models import Category, Product, ProductCategory, ProductClass
from oscar.apps.partner.models import Partner, StockRecord
from taggit.models import Tag
from wagtail.contrib.redirects.models import Redirect
from wagtail.documents.models import Document
from wagtail.models import Collection, Page, Site

JOINED = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
USERS = [("alice", "Alice", True), ("bob", "Bob", False), ("carol", "Carol", False), ("dave", "Dave", False)]
GROUPS = {"editors": ["alice", "bob"], "shop-staff": ["alice", "carol"]}
PAGES = ["About", "Blog", "Contact", "Shop"]
CATEGORIES = {"Books": ["Fiction", "Non-fiction"], "Music": ["Vinyl"]}
PRODUCTS = [("Dune", "Fiction", "9780441013593", "9.99"), ("Cosmos", "Non-fiction", "9780345539434", "12.50"),
            ("Kind of Blue", "Vinyl", "0074646393520", "24.00")]


class Command(BaseCommand):
    help = "Create the corpus content (auth, allauth, wagtail, oscar) once."

    @transaction.atomic
    def handle(self, *args, **options):
        if User.objects.filter(username="alice").exists():
            self.stdout.write("corpus already seeded")
            return
        users = self._users()
        self._wagtail()
        self._oscar()
        self.stdout.write(f"seeded corpus: {len(users)} users, {len(PAGES)} pages, {len(PRODUCTS)} products")

    def _users(self) -> dict[str, User]:
        users = {}
        for username, first, staff in USERS:
            # A fixed unusable password: make_password() would salt it at random.
            users[username] = User.objects.create(
                username=username, first_name=first, email=f"{username}@corpus.test", password="!corpus",
                is_staff=staff, is_superuser=staff, date_joined=JOINED)
            EmailAddress.objects.create(user=users[username], email=f"{username}@corpus.test", verified=True,
                                        primary=True)
        for name, members in GROUPS.items():
            Group.objects.create(name=name).user_set.set([users[m] for m in members])
        return users

    def _wagtail(self) -> None:
        root = Page.get_first_root_node()
        home = root.add_child(instance=Page(title="Corpus home", slug="corpus-home",
                                            translation_key=uuid.UUID(int=1)))
        for n, title in enumerate(PAGES, start=2):
            home.add_child(instance=Page(title=title, slug=title.lower(), translation_key=uuid.UUID(int=n)))
        Site.objects.create(hostname="corpus.test", port=80, root_page=home, site_name="corpus",
                            is_default_site=False)
        collection = Collection.get_first_root_node().add_child(name="Corpus documents")
        Document.objects.create(title="Read me", file="documents/readme.txt", collection=collection,
                                file_size=12, file_hash="0" * 40)
        Redirect.objects.create(old_path="/old-blog", redirect_page=home, is_permanent=True)
        for name in ("news", "release"):
            Tag.objects.create(name=name, slug=name)
        DjangoSite.objects.filter(pk=1).update(domain="corpus.test", name="corpus")

    def _oscar(self) -> None:
        categories = {}
        for parent, children in CATEGORIES.items():
            categories[parent] = Category.add_root(name=parent, slug=parent.lower())
            for child in children:
                categories[child] = categories[parent].add_child(name=child, slug=child.lower().replace("-", ""))
        product_class = ProductClass.objects.create(name="Media", slug="media", requires_shipping=True,
                                                    track_stock=True)
        partners = [Partner.objects.create(name=name, code=name.lower()) for name in ("Warehouse", "Dropship")]
        for title, category, upc, price in PRODUCTS:
            product = Product.objects.create(title=title, slug=title.lower().replace(" ", "-"), upc=upc,
                                             structure=Product.STANDALONE, product_class=product_class)
            ProductCategory.objects.create(product=product, category=categories[category])
            for n, partner in enumerate(partners):
                StockRecord.objects.create(product=product, partner=partner, partner_sku=f"{partner.code}-{upc}",
                                           price_currency="GBP", price=Decimal(price) + n, num_in_stock=10 * (n + 1))
