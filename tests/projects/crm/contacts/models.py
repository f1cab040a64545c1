from django.db import models
from taggit.managers import TaggableManager


class Contact(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    phone = models.CharField(max_length=32, blank=True, default="")
    tags = TaggableManager(blank=True)

    def __str__(self):
        return self.name
