"""The words of requests the clause splitter reads: verbs that start an instruction, the
connectives between instructions, and the things writers make, in the languages users wrote
requests in (English, French, Spanish, German, Italian, Portuguese, Dutch).

Only patterns (regular-expression alternatives) live here; ``planner.clauses`` uses them.
"""

from __future__ import annotations

ALSO_WORDS = (
    r"also|separately|additionally|separatamente|por\s+separado|s[ée]par[ée]ment|getrennt|"
    r"unrelated|plus|while\s+you'?re\s+at\s+it|außerdem|ausserdem|daarnaast|ook|meanwhile"
)

# Verbs that start an instruction, in the languages users wrote requests in.
GENERATE_VERBS = (
    r"write|wrtie|wirte|wrte|rwite|tell|compose|create|generate|draft|make|give|produce|invent|"
    r"suggest|jot(?:\s+down)?|whip\s+up|craft|pen|cook\s+up|knock\s+out|"
    r"list|explain|describe|brainstorm|outline|come up with|prepare|design|plan|propose|name|"
    r"pick|choose|select|rewrite|shorten|expand|improve|edit|turn|add|answer|compare|rank|rate|"
    r"reverse|recommend|weigh|[ée]cris|[ée]crire|r[ée]dige|raconte|donne|fais|escribe|escribir|"
    r"cu[ée]ntame|dame|dime|haz|dis-moi|dites-moi|sag|"
    r"schreib|schreibe|erz[äa]hl|erz[äa]hle|gib|mach|mache|scrivi|racconta|escreva|conta|"
    r"schrijf|vertel|geef|maak|bedenk|zeg"
)

TRANSFORM_VERBS = (
    r"translate|tranlsate|traslate|translat\w*|summari[sz]e|sumarize|summerize|sum up|"
    r"count|uppercase|capitali[sz]e|shout|sort|alphabeti[sz]e|order|wait|pause|sleep|"
    r"combine|merge|join|put|show|convert|render|list|tl;?dr|condense|shorten|"
    r"trad[uú]\w*|tradui\w*|r[ée]sum\w*|res[úu]m\w*|r[ée]uni\w*|comb[íi]n\w*|cuenta|compte|"
    r"rassembl\w*|metti|"
    r"j[úu]nt\w*|junte|stitch|compare|dedupe|deduplicate|boil|vertaal|vat|tel|sorteer|"
    r"[üu]bersetz\w*|fass\w*|z[äa]hl\w*|sortier\w*|kombinier\w*|riassum\w*|unisci\w*|"
    r"f[üu]ge|f[üu]g|vergleiche?|confronta|vergelijk"
)

VERB = rf"(?:{GENERATE_VERBS}|{TRANSFORM_VERBS})"

THEN = (
    r"then|and\s+then|and\s+after\s+that|after\s+that|afterwards|finally|next(?=\s*,)|puis|"
    r"et\s+puis|once\s+(?:that'?s\s+|it'?s\s+)?done|when\s+(?:that'?s|it'?s)\s+done|"
    r"infine|e\s+infine|enfin|et\s+enfin|finalmente|schlie(?:ß|ss)lich|tot\s+slot|"
    r"followed\s+by|daarna|vervolgens|en\s+dan|once\s+you(?:'ve|\s+have)\s+(?:got\s+)?(?:that|it)|"
    r"once\s+you'?re\s+done|when\s+you'?re\s+done|"
    r"ensuite|luego|y\s+luego|despu[ée]s|dann|und\s+dann|danach|poi|e\s+poi|depois|e\s+depois"
)

ALSO = (
    r"also|separately|additionally|as\s+well|aussi|tambi[ée]n|auch|anche|separatamente|"
    r"por\s+separado|s[ée]par[ée]ment|getrennt|separat|unrelated|plus|as\s+well\s+as|"
    r"while\s+you'?re\s+at\s+it|außerdem|ausserdem|daarnaast|meanwhile|in\s+the\s+meantime|"
    r"en\s+attendant|mientras\s+tanto|inzwischen|intanto|sans\s+rapport|independently|"
    r"ind[ée]pendamment|tamb[ée]m|a\s+parte|los\s+daarvan|unabh[äa]ngig\s+davon|separadamente|"
    r"while\s+(?:that|it)'?s?\s+(?:is\s+)?(?:happening|running|going\s+on)|at\s+the\s+same\s+time|"
    r"in\s+parallel|simultaneously"
)

AND = r"and|&|et|y|e|und|en|as\s+well\s+as"

FOREIGN_GENRES = (
    r"blague|po[èe]me|histoire|conte|chiste|poema|historia|cuento|witz|gedicht|geschichte|"
    r"barzelletta|poesia|storia|racconto|piada|conto|grap|mop|verhaal|slogan|haïku|haiku"
)
"""The things the writing verbs of other languages make, for items (``une blague sur ...``)."""

GENRES = (
    "joke|poem|haiku|limerick|story|essay|summary|tweet|headline|email|letter|song|slogan|"
    "riddle|fact|quote|recipe|description|sonnet|ode|tagline|title|caption|bio|speech|toast|"
    "review|post|paragraph|sentence|idea|name|question|answer|fable|tale|ballad|rhyme|pun|"
    "argument|conclusion|note|tip|intro|introduction|list|version|message|motivational quote|"
    "greeting|farewell|band name|album title|ad|advert|blurb|verse|tongue twister|bio|"
    "opening line|closing line|toast|pickup line|anecdote|definition|plan|menu|motto|mantra|"
    "proverb|catchphrase|pitch|hashtag|epitaph|couplet|jingle|lullaby|compliment|excuse|"
    "apology|invitation|motivational message"
)

STRONG_WRITERS = (
    r"write|wrtie|wirte|compose|create|draft|generate|invent|brainstorm|outline|design|"
    r"[ée]cris|r[ée]dige|escribe|escreva|schreib\w*|scrivi"
)
