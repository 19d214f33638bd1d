from django import forms

from django_site.models import Note


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ["text"]
