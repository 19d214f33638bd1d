from django.db import models


class Entry(models.Model):
    """One message left on the home page."""

    name = models.CharField(max_length=80)
    message = models.TextField(max_length=1000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.name}: {self.message[:40]}"


class Upload(models.Model):
    """What we learned about an uploaded file; the file itself is not kept."""

    filename = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.size} bytes)"
