#!/usr/bin/perl
# The seal of a cache entry: the path, size and mtime (whole seconds, as tar keeps them) of
# every file it holds, written once a build has finished writing into it. An entry without
# a seal (its build stopped) or whose files differ from it is not used.
#   open ENTRY             when the entry matches its seal: prints "ok BYTES" and removes the
#                          seal (the build that uses it writes into it); else prints why not
#   seal ENTRY LIMIT       seals ENTRY, then evicts the least recently used entries beside
#                          it beyond LIMIT bytes in all; prints "kept N" and the evicted ones
use strict;
use warnings;
use File::Find;
use File::Path qw(remove_tree);

my ($cmd, $entry, $limit) = @ARGV;
die "usage: seal.pl open|seal ENTRY [LIMIT]\n" unless $cmd && $entry;
my $SEAL = '.seal';

# path => "size\tmtime" of the entry's files (symbolic links are not followed); and the total
sub listing {
  my ($dir) = @_;
  my (%files, $total);
  $total = 0;
  return (\%files, 0) unless -d $dir;
  find({ no_chdir => 1, wanted => sub {
    my @st = lstat($_) or return;
    return unless -f _;
    my $p = substr($File::Find::name, length($dir) + 1);
    return if $p eq $SEAL || $p eq "$SEAL.tmp";
    $files{$p} = "$st[7]\t$st[9]";
    $total += $st[7];
  }}, $dir);
  return (\%files, $total);
}

if ($cmd eq 'open') {
  open(my $fh, '<', "$entry/$SEAL") or do { print "it was not completed (the build that wrote it stopped)\n"; exit 0 };
  my %sealed;
  while (<$fh>) {
    chomp;
    my ($size, $mtime, $path) = split /\t/, $_, 3;
    $sealed{$path} = "$size\t$mtime" if defined $path;
  }
  my ($files, $total) = listing($entry);
  my @added = grep { !exists $sealed{$_} } keys %$files;
  my @gone = grep { !exists $files->{$_} } keys %sealed;
  if (@added || @gone) { print "files were added or removed since it was sealed\n"; exit 0 }
  my $bad = grep { $files->{$_} ne $sealed{$_} } keys %$files;
  if ($bad) { print "$bad file(s) changed since it was sealed\n"; exit 0 }
  unlink "$entry/$SEAL" or die "$entry/$SEAL: $!\n";
  print "ok $total\n";
} elsif ($cmd eq 'seal') {
  die "seal needs a LIMIT\n" unless defined $limit;
  my ($files, $size) = listing($entry);
  open(my $out, '>', "$entry/$SEAL.tmp") or die "$entry: $!\n";
  print $out "$files->{$_}\t$_\n" for sort keys %$files;
  close $out or die "$entry: $!\n";
  rename "$entry/$SEAL.tmp", "$entry/$SEAL" or die "$entry: $!\n";
  utime(undef, undef, $entry);
  # the entries beside it, most recently used first
  (my $entries = $entry) =~ s{/[^/]+/?$}{};
  opendir(my $dh, $entries) or die "$entries: $!\n";
  my @all = map { "$entries/$_" } grep { !/^\./ && -d "$entries/$_" && !-l "$entries/$_" } readdir $dh;
  closedir $dh;
  my %mtime = map { $_ => (stat $_)[9] } @all;
  my ($total, $kept) = (0, 0);
  for my $e (sort { $mtime{$b} <=> $mtime{$a} || $a cmp $b } @all) {
    my $bytes = $e eq $entry ? $size : (listing($e))[1];
    if ($total + $bytes > $limit) {
      remove_tree($e);
      (my $name = $e) =~ s{.*/}{};
      print "evicted $name\n";
    } else {
      $total += $bytes;
      $kept++;
    }
  }
  print "kept $kept\n";
} else {
  die "unknown command $cmd\n";
}
